"""What a study's results look like: the report and its plots."""
