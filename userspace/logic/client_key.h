// Client addresses as the steering program sees them: IPv6, IPv4 mapped, masked to a prefix.
#pragma once

#include <optional>
#include <string>

#include "bpf/sio_steer.h"

namespace sio_steer {

// "192.0.2.7" or "2001:db8::1" as an unmasked key (IPv4 as ::ffff:a.b.c.d); nullopt if the whole text
// is not one address.
std::optional<client_key> parse_address(const std::string& text);

bool is_v4_mapped(const client_key& key);

// The key the program computes for this address under `c` (its prefix masks).
client_key key_for(client_key address, const config& c);

// The ring bucket the program hashes a key to (address mode).
std::uint32_t ring_bucket(const client_key& key, const config& c);

// "192.0.2.7", "198.51.100.0/24", "2001:db8:1:2::/64": the key with the prefix it stands for.
std::string format_key(const client_key& key, const config& c);

}  // namespace sio_steer
