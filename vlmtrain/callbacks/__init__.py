"""Lightning callbacks: generation-based evaluation, throughput, end-of-run export."""
