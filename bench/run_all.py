"""Every benchmark, one after another: ``make bench``."""

from bench import api_fuzz, job_speed, upload_load, upload_memory

if __name__ == "__main__":
    job_speed.main()
    upload_load.main()
    upload_memory.main()
    api_fuzz.main()
