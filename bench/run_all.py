"""Every benchmark, one after another: ``make bench``."""

from bench import job_speed, vlm_throughput

if __name__ == "__main__":
    job_speed.main()
    vlm_throughput.main()
