"""Every benchmark, one after another: ``make bench``."""

from bench import job_speed, worker_scaling

if __name__ == "__main__":
    job_speed.main()
    worker_scaling.main([])
