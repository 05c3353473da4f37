#include "logic/maglev.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "bpf/sio_steer.h"

namespace sio_steer {

namespace {

// splitmix64's finalizer: a well-mixed 64-bit value even for small consecutive ids (0, 1, 2...).
std::uint64_t mix(std::uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

// Two independent hashes of an id: the same mix under two different seeds.
std::uint64_t h1(std::uint64_t id) { return mix(id ^ 0x6a09e667f3bcc908ULL); }
std::uint64_t h2(std::uint64_t id) { return mix(id ^ 0xbb67ae8584caa73bULL); }

bool is_prime(std::uint32_t n)
{
    if (n < 2)
        return false;
    for (std::uint64_t d = 2; d * d <= n; ++d)
        if (n % d == 0)
            return false;
    return true;
}

}  // namespace

std::vector<std::uint32_t> maglev_table(std::span<const maglev_member> members, std::uint32_t size)
{
    // A prime size makes every skip in 1..size-1 coprime with it, so each member's preference
    // list (offset, offset + skip, offset + 2 skip, ...) is a permutation of the whole table.
    if (!is_prime(size))
        throw std::invalid_argument("maglev table size " + std::to_string(size) + " is not prime");

    // The fill order decides ties, so sort by id: the table then depends only on the set.
    std::vector<maglev_member> sorted(members.begin(), members.end());
    std::sort(sorted.begin(), sorted.end(), [](const maglev_member& a, const maglev_member& b) { return a.id < b.id; });
    auto dup = std::adjacent_find(sorted.begin(), sorted.end(),
                                  [](const maglev_member& a, const maglev_member& b) { return a.id == b.id; });
    if (dup != sorted.end())
        throw std::invalid_argument("duplicate maglev member id " + std::to_string(dup->id));

    std::vector<std::uint32_t> table(size, SIO_STEER_SLOT_NONE);
    if (sorted.empty())
        return table;

    // Each member walks its own permutation: pos is its next preferred entry, skip its stride.
    struct cursor {
        std::uint32_t pos;
        std::uint32_t skip;
    };
    std::vector<cursor> cursors;
    cursors.reserve(sorted.size());
    for (const auto& m : sorted)
        cursors.push_back(
            {static_cast<std::uint32_t>(h1(m.id) % size), static_cast<std::uint32_t>(h2(m.id) % (size - 1) + 1)});

    // Members take turns, each claiming its next preferred entry that is still empty. Filled
    // entries are tracked apart from the table, since a member's slot may itself be SLOT_NONE.
    std::vector<bool> taken(size, false);
    std::uint32_t filled = 0;
    while (true) {
        for (std::size_t i = 0; i < sorted.size(); ++i) {
            cursor& c = cursors[i];
            while (taken[c.pos])
                c.pos = static_cast<std::uint32_t>((std::uint64_t{c.pos} + c.skip) % size);
            taken[c.pos] = true;
            table[c.pos] = sorted[i].slot;
            if (++filled == size)
                return table;
        }
    }
}

}  // namespace sio_steer
