/* See lz4.h: literal-only LZ4 blocks. */
#include <string.h>
#include "lz4.h"

int LZ4_compressBound(int n) {
    return (n < 0 || n > 0x7E000000) ? 0 : n + n / 255 + 16;
}

int LZ4_compress_default(const char* src, char* dst, int n, int capacity) {
    int need = 1 + (n >= 15 ? (n - 15) / 255 + 1 : 0) + n;
    char* op = dst;
    if (n < 0 || need > capacity) return 0;
    if (n >= 15) {
        int rest = n - 15;
        *op++ = (char)0xF0;
        while (rest >= 255) { *op++ = (char)255; rest -= 255; }
        *op++ = (char)rest;
    } else {
        *op++ = (char)(n << 4);
    }
    memcpy(op, src, (size_t)n);
    return (int)(op + n - dst);
}
