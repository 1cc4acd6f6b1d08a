"""The FineTuneJob and BaseModelTemplate API: pydantic models, the one source of the CRD schemas."""
