// Helpers shared by the fuzz targets: splitting one input into fields, and a property check that
// crashes (so libFuzzer keeps the input) with a message saying which property broke.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace fuzz {

inline std::string_view input(const std::uint8_t* data, std::size_t size)
{
    return {reinterpret_cast<const char*>(data), size};
}

// The input cut at '\n' into at most `max` fields (the last one keeps the rest, newlines included).
inline std::vector<std::string> fields(std::string_view text, std::size_t max)
{
    std::vector<std::string> out;
    while (out.size() + 1 < max) {
        std::size_t eol = text.find('\n');
        if (eol == std::string_view::npos)
            break;
        out.emplace_back(text.substr(0, eol));
        text.remove_prefix(eol + 1);
    }
    out.emplace_back(text);
    return out;
}

// A broken property is a finding like a crash: print it and abort.
#define FUZZ_CHECK(cond)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            std::fprintf(stderr, "%s:%d: property broken: %s\n", __FILE__, __LINE__, #cond); \
            std::abort();                                                                 \
        }                                                                                 \
    } while (0)

}  // namespace fuzz
