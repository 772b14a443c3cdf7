"""Import-only stand-in for torchsde (see bench/stand_ins/README.md): only the dpmpp_sde-style
samplers use it, through ``BrownianTree``, which raises here."""


class BrownianTree:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("torchsde is not installed here; bench/stand_ins/torchsde only lets "
                           "the host import")
