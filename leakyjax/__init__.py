"""leakyjax: the Leaky ReLU family for JAX, with exact subgradients at zero."""

from leakyjax._activation import leaky_relu
from leakyjax._bijection import inverse_leaky_relu, leaky_relu_log_abs_det_jacobian
from leakyjax._diagnostics import dead_fraction, dead_units
from leakyjax._family import prelu, rrelu
from leakyjax._initializers import gain, he_normal, he_uniform
from leakyjax._sites import Site
from leakyjax._tracking import DeadUnits, DeadUnitTracker, SiteState, track_dead_units
from leakyjax._transforms import leakify, relu_sites
from leakyjax._wiring import UnitSlice, Wiring, revive, unit_wiring

__all__ = [
    "DeadUnitTracker",
    "DeadUnits",
    "Site",
    "SiteState",
    "UnitSlice",
    "Wiring",
    "dead_fraction",
    "dead_units",
    "gain",
    "he_normal",
    "he_uniform",
    "inverse_leaky_relu",
    "leakify",
    "leaky_relu",
    "leaky_relu_log_abs_det_jacobian",
    "prelu",
    "relu_sites",
    "revive",
    "rrelu",
    "track_dead_units",
    "unit_wiring",
]
__version__ = "0.1.0"
