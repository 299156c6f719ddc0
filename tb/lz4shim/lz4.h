/* Minimal LZ4 block compressor for Verilator's FST writer, used only when the system has no
 * liblz4 headers (so `WAVES=1` needs nothing beyond a C++ compiler). It writes valid LZ4
 * blocks made of one literal-only sequence: any LZ4 decoder (GTKWave, Surfer) reads them;
 * they are just not compressed. */
#ifndef PIMRTL_LZ4_SHIM_H
#define PIMRTL_LZ4_SHIM_H
#ifdef __cplusplus
extern "C" {
#endif
int LZ4_compressBound(int inputSize);
int LZ4_compress_default(const char* src, char* dst, int srcSize, int dstCapacity);
#ifdef __cplusplus
}
#endif
#endif
