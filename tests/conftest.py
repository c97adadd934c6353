import os

import hypothesis

# Hypothesis profiles: "ci" (the default) runs the case counts the property tests promise
# (10,100 in all), derandomized so that every run checks the same cases; "explore" runs as
# many with fresh random cases; "dev" runs at most 50 per test for quick local iteration.
# Choose one with HYPOTHESIS_PROFILE=explore pytest.
hypothesis.settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
hypothesis.settings.register_profile("explore", deadline=None, print_blob=True)
hypothesis.settings.register_profile("dev", deadline=None, max_examples=50)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
hypothesis.settings.load_profile(PROFILE)


def pytest_terminal_summary(terminalreporter):
    import strategies  # a test helper, imported once the tests have run

    cases = strategies.GENERATED["cases"]
    if cases:
        terminalreporter.write_line(
            f"hypothesis ({PROFILE} profile): {cases} generated cases run in property tests"
        )
