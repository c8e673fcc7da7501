"""Observation encoders: per-camera ResNet-18 (GroupNorm), proprio MLP, and their fusion over n_obs_steps."""

from robot_rl.policies.encoders.image import ImageEncoder
from robot_rl.policies.encoders.obs import ObsEncoder
from robot_rl.policies.encoders.resnet import ResNet18GN
from robot_rl.policies.encoders.spatial_softmax import SpatialSoftmax
from robot_rl.policies.encoders.state_encoder import StateEncoder

__all__ = ["ImageEncoder", "ObsEncoder", "ResNet18GN", "SpatialSoftmax", "StateEncoder"]
