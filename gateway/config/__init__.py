"""The project file: schema, loading with positioned errors, comment-keeping writes."""

from gateway.config.loader import load_config, validate_text
from gateway.config.schema import AppConfig, ProjectConfig
from gateway.config.writer import set_value, write_atomic

__all__ = ["AppConfig", "ProjectConfig", "load_config", "set_value", "validate_text",
           "write_atomic"]
