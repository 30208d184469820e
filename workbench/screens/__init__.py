"""The workbench's screens: dashboard, trace, logs, config editor and the dialogs."""
