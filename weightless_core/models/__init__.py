"""Reference architectures and the reference models the benchmarks and the demo train."""
