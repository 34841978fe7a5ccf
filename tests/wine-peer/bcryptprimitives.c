/* A stand-in for Windows' bcryptprimitives.dll, for Wine 8 (Debian 12), which lacks it.
 * Rust's std takes its randomness from ProcessPrng there on Windows 10 and later; real
 * Windows ships the DLL, so this is only ever put beside awsvpc.exe in the Wine tests
 * (scripts/cross.sh builds it with mingw-w64). RtlGenRandom is advapi32's SystemFunction036. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, n))
            return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
