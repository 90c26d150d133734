"""Every benchmark, one after another: ``make bench``."""

from bench import job_speed, science_hotspots, science_speed

if __name__ == "__main__":
    job_speed.main()
    science_speed.main()
    science_hotspots.main()
