"""The process runtime: logging, metrics and stop signals, shared by the workers, the writer and the commands."""
