from .spade import SPADE
from .trunks import ARCHITECTURES, DownsamplingTrunk, UpsamplingTrunk, channel_schedule, check_image_size, check_input

__all__ = ["ARCHITECTURES", "check_input", "DownsamplingTrunk", "UpsamplingTrunk", "channel_schedule", "check_image_size", "SPADE"]
