"""Stage 3: how real the fakes are: classifier, two-sample test, memorisation, feature metrics."""
