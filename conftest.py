# Loaded by pytest before any test module: importing tfsparse sets
# TF_USE_LEGACY_KERAS before a test's own `import tensorflow` can run first.
import tfsparse  # noqa: F401
