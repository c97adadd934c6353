import os

# Runs in its own process (tests/test_sharding.py starts it), so the 8 simulated CPU devices
# are set before JAX initializes and the rest of the suite keeps its single device.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
