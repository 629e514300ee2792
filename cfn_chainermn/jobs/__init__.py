"""Jobs on the master: mpiexec argv (pure), the job folder and its shell scripts, the runner."""
