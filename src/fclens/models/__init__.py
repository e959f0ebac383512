"""Model entries (`spec`, torch-free) and the registry that builds them (`registry`, torch)."""

from fclens.models.spec import ModelSpec, check_arch

__all__ = ["ModelSpec", "check_arch"]
