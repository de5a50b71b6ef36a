from amst_core.models.encoders import AudioEncoder, VisualEncoder, embedding_dim
from amst_core.models.fusion import FUSION_HEADS, ConcatHead, FusionHead, HelperHeads, LateSumHead, SharedMeanHead
from amst_core.models.net import MultimodalNet

__all__ = ["FUSION_HEADS", "AudioEncoder", "ConcatHead", "FusionHead", "HelperHeads", "LateSumHead",
           "MultimodalNet", "SharedMeanHead", "VisualEncoder", "embedding_dim"]
