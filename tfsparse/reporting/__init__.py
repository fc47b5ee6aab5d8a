"""What a user reads: trade-off reports, export tables and model cards, from the stages' JSON.

`report` renders a pipeline run or a sweep (markdown, CSV, plots); `export_table` the table of
an export folder from its manifest; `model_card` the README.md an app developer reads before
shipping a file. Nothing here trains, converts or times: it reads what the stages wrote.
"""
