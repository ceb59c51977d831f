"""Many runs: a sweep's plan (scenarios x strategies x grid x seeds), its execution here, in worker
processes or as Slurm jobs, and the state of every run."""
