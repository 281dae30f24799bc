"""The Gradio page of the AudioFormer checkpoint $model_id, written by the AudioFormer project's `python -m
audioformer.model_cards.publish ... --space_id` (the page itself is `audioformer_space.py`)."""

from audioformer_space import build_demo


demo = build_demo("$model_id")

if __name__ == "__main__":
    demo.launch()
