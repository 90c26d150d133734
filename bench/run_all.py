"""Every benchmark, one after another: ``make bench``."""

from bench import (
    api_fuzz,
    eta_accuracy,
    job_speed,
    science_hotspots,
    science_speed,
    upload_load,
    upload_memory,
    vlm_throughput,
    worker_scaling,
)

if __name__ == "__main__":
    science_speed.main()
    science_hotspots.main()
    job_speed.main()
    eta_accuracy.main()
    vlm_throughput.main()
    upload_load.main()
    upload_memory.main()
    api_fuzz.main()
    worker_scaling.main([])
