"""The models, ``nn.Module``s only, one per file with its shapes in its docstring: the merchant-profile branches and
fusion (memo §1.1, trained by ``aidg.training.profile``) and the contextual deal scorer's parts (memo §1.2).

Nothing is imported here: serving reads the deal scorer's modules only, without the profile encoders' PyTorch
Geometric and text encoder (a start without them takes seconds less).
"""
