"""Every benchmark, one after another: ``make bench``."""

from bench import eta_accuracy, job_speed, vlm_throughput

if __name__ == "__main__":
    job_speed.main()
    eta_accuracy.main()
    vlm_throughput.main()
