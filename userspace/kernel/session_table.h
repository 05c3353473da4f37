// The sessions table of a port (an ARRAY of struct session_set, bpf/sio_steer.h), mapped into this
// process: find, record and forget clients in place, entry by entry, in the order the program
// writes them (claim, client, slot and generation, last_seen_ns), so that the program, which
// writes the same sets meanwhile, and this process never mix two clients' records.
// bpf/session_table.bpf.h is the program's side.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "bpf/sio_steer.h"

namespace sio_steer {

class session_table {
public:
    // Maps the sessions map `fd` (its max_entries are the sets); `hash_seed` places the clients
    // (config.hash_seed). Throws sys_error if it cannot be mapped.
    session_table(int fd, std::uint32_t hash_seed);
    ~session_table();
    session_table(session_table&& other) noexcept;
    session_table& operator=(session_table&& other) noexcept;
    session_table(const session_table&) = delete;
    session_table& operator=(const session_table&) = delete;

    std::uint32_t sets() const { return sets_; }
    std::uint32_t capacity() const { return sets_ * SIO_STEER_SESSION_WAYS; }
    std::uint32_t set_of(const client_key& key) const;

    // The client's record, if the table holds one (the newest, should it hold two).
    std::optional<session> find(const client_key& key) const;
    // Records the client as the program would: over its own entry, else an empty one, else one
    // idle past `ttl_ns` at `now_ns`, else the least recently seen. With `keep_newer`, a record
    // the table already holds for the client stays (the program's, newer). False if the program
    // was writing the entry throughout a few tries.
    bool record(const client_key& key, const session& s, std::uint64_t ttl_ns, std::uint64_t now_ns,
                bool keep_newer = false) const;
    // Empties every entry of the client; how many there were.
    std::size_t forget(const client_key& key) const;
    // Every recorded client (each once, with its newest record), and how many there are.
    std::vector<std::pair<client_key, session>> entries() const;
    std::size_t count() const;
    // Empties every entry; how many clients there were.
    std::size_t clear() const;

private:
    std::uint64_t* entry_words(std::uint32_t set, int way) const;
    void unmap();

    void* mapping_ = nullptr;
    std::size_t length_ = 0;
    std::uint32_t sets_ = 0;
    std::uint32_t seed_ = 0;
};

// Reads every set of the sessions map `fd` once, through the kernel's own mapping of it (a batch
// lookup). The map's pages are zeroed when it is created but not touched at their kernel address;
// under shadow paging (a PVM guest, as on the benchmark machine) the first access to each page
// then costs microseconds, which the program would pay on the first SYN of the page's clients.
// The LRU_HASH of ABI 2 had its elements touched as it was created.
void touch_sessions_map(int fd);

}  // namespace sio_steer
