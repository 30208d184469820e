"""Demo apps run by the bundled workbench.toml."""
