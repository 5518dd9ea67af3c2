// Compiled (not loaded) by rectifiers.ops.cpp.build.openmp_flags to learn whether the C++
// compiler takes -fopenmp and finds OpenMP's header and library.
#include <omp.h>

int main() { return omp_get_max_threads() > 0 ? 0 : 1; }
