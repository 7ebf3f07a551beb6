"""mergekit's merge YAML: schema, parameter resolution, planning, streamed execution."""
