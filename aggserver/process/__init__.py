"""Running processes: serving, supervision, children that die with their parent, log lines."""
