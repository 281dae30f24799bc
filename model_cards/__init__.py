"""The Hub face of AudioFormer: model cards, plots, publishing, the Inference Endpoints handler."""
