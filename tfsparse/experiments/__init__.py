"""Studies that informed tfsparse's defaults, kept runnable; not part of the library API.

`structure_study`: unstructured vs output-channel blocks vs 2:4, trained and timed on
arm64-emu against each file's dense twin. Built on the same stages as the pipeline.
"""
