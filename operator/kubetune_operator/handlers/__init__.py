"""The kopf handlers (thin glue): indexes and wakes, the operator runtime, the optional validating webhook."""
