#include "logic/client_key.h"

#include <arpa/inet.h>

#include <cstring>

namespace sio_steer {

std::optional<client_key> parse_address(const std::string& text)
{
    // inet_pton reads a C string: "192.0.2.7\0junk" would pass as 192.0.2.7 (tests/fuzz found it).
    if (text.find('\0') != std::string::npos)
        return std::nullopt;
    client_key key{};
    in_addr v4{};
    if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
        key.addr[10] = key.addr[11] = 0xff;
        std::memcpy(key.addr + 12, &v4, 4);
        return key;
    }
    if (inet_pton(AF_INET6, text.c_str(), key.addr) == 1)
        return key;
    return std::nullopt;
}

bool is_v4_mapped(const client_key& key)
{
    static const std::uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return std::memcmp(key.addr, prefix, sizeof(prefix)) == 0;
}

client_key key_for(client_key address, const config& c)
{
    sio_steer_apply_mask(&address, is_v4_mapped(address) ? &c.v4_mask : &c.v6_mask);
    return address;
}

std::uint32_t ring_bucket(const client_key& key, const config& c)
{
    return sio_steer_hash(&key, 0, c.hash_seed) % SIO_STEER_RING_SIZE;
}

std::string format_key(const client_key& key, const config& c)
{
    char text[INET6_ADDRSTRLEN] = {};
    if (is_v4_mapped(key)) {
        inet_ntop(AF_INET, key.addr + 12, text, sizeof(text));
        return c.v4_prefix >= 32 ? text : std::string(text) + "/" + std::to_string(c.v4_prefix);
    }
    inet_ntop(AF_INET6, key.addr, text, sizeof(text));
    return c.v6_prefix >= 128 ? text : std::string(text) + "/" + std::to_string(c.v6_prefix);
}

}  // namespace sio_steer
