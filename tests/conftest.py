import os

import hypothesis

# Hypothesis profiles: "ci" (the default) generates the case counts the suite promises;
# "dev" is quicker for local iteration: HYPOTHESIS_PROFILE=dev pytest.
hypothesis.settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
hypothesis.settings.register_profile("dev", deadline=None, max_examples=50)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
