"""The architecture zoo: `create_model(name, **kw)` over one registry.

Importing this package registers every family (each module's `@register_model`).
"""

from tfsparse.zoo.registry import create_model, get_builder, list_models, register_model
from tfsparse.zoo import inception, mobilenet_v1, mobilenet_v2  # noqa: F401  (registers)
from tfsparse.zoo import autoencoder, ds_cnn, policy_net, splade, text_classifier  # noqa: F401  (registers)

__all__ = ["create_model", "get_builder", "list_models", "register_model"]
