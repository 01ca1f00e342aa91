"""The task a model id suggests, by keywords in the name: step 4 of task detection (`tasks.py`).

There is one table per input kind, because a keyword means different things for different
inputs (`mask` is a segmentation model for an image, while a text model with `mask` in its name
tells us nothing). The tables are read top to bottom and the first keyword found wins, so the
more specific keywords come first: `roberta-base-squad2` is question answering before
`roberta-base` is fill-mask, and `detr-resnet-50-panoptic` is segmentation before `detr` is
object detection.

Matching is case-insensitive and a keyword only matches at the start of a word, words being runs
of letters and digits: `sst` does not match inside `assistant`, but `tts` matches in `mms-tts-eng`.
"""

from __future__ import annotations

import re

from gateway.simulator.media import Kind


def _keywords(*words: str) -> re.Pattern[str]:
    return re.compile(r"(?<![a-z0-9])(?:" + "|".join(re.escape(w) for w in words) + ")")


TEXT_DEFAULT = "text-generation"
IMAGE_DEFAULT = "image-classification"
AUDIO_DEFAULT = "automatic-speech-recognition"

_TEXT: list[tuple[tuple[str, ...], str]] = [
    (("diffusion", "flux", "sdxl", "text-to-image"), "text-to-image"),
    (("tts", "bark", "speecht5", "vits", "kokoro", "parler", "fastspeech", "text-to-speech"), "text-to-speech"),
    (("musicgen", "audioldm", "stable-audio", "text-to-audio"), "text-to-audio"),
    (("mnli", "xnli", "zero-shot", "zeroshot"), "zero-shot-classification"),
    (("ner",), "token-classification"),
    (("tapas", "tapex", "table-question-answering"), "table-question-answering"),
    (("squad", "question-answering"), "question-answering"),
    (("sst", "sentiment", "emotion", "classifier"), "text-classification"),
    (("bge", "e5", "gte", "minilm", "mpnet", "embed", "sentence-transformers"), "feature-extraction"),
    (("opus-mt", "nllb", "m2m100", "madlad", "translat"), "translation"),
    (("bart-large-cnn", "distilbart-cnn", "pegasus", "summar", "t5"), "summarization"),
    (("bert-base", "bert-large", "distilbert-base", "roberta-base", "roberta-large", "distilroberta-base",
      "xlm-roberta", "albert", "camembert", "modernbert", "fill-mask"), "fill-mask"),
    (("regress",), "tabular-regression"),
    (("tabular", "wine-quality"), "tabular-classification"),
]

_IMAGE: list[tuple[tuple[str, ...], str]] = [
    (("panoptic", "segformer", "mask", "oneformer", "upernet", "deeplab", "sam", "segment"), "image-segmentation"),
    (("detr", "yolo", "yolos", "object-detection"), "object-detection"),
    (("vqa", "vilt", "visual-question-answering"), "visual-question-answering"),
    (("layoutlm", "donut", "docvqa", "document-question-answering"), "document-question-answering"),
    (("blip", "git-base", "git-large", "vit-gpt2", "caption", "captioning", "pix2struct", "image-to-text"),
     "image-to-text"),
    (("pix2pix", "instruct-pix2pix", "diffusion", "sdxl", "flux", "controlnet", "kontext", "upscal", "refiner",
      "image-to-image"), "image-to-image"),
    (("clip", "siglip", "zero-shot"), "zero-shot-image-classification"),
    (("vit", "resnet", "convnext", "deit", "beit", "swin", "efficientnet", "mobilenet", "regnet", "nsfw",
      "classifier", "image-classification"), "image-classification"),
]

_AUDIO: list[tuple[tuple[str, ...], str]] = [
    (("sepformer", "metricgan", "enhance", "denoise", "separation", "audio-to-audio"), "audio-to-audio"),
    (("ast", "audioset", "superb-er", "superb-ks", "emotion", "keyword", "speech-commands", "classifier",
      "audio-classification"), "audio-classification"),
    (("whisper", "wav2vec", "wav2vec2", "hubert", "asr", "parakeet", "canary", "speech-recognition"),
     "automatic-speech-recognition"),
]


def _compile(table: list[tuple[tuple[str, ...], str]]) -> list[tuple[re.Pattern[str], str]]:
    return [(_keywords(*words), task) for words, task in table]


_TABLES: dict[Kind | None, list[tuple[re.Pattern[str], str]]] = {
    None: _compile(_TEXT), "image": _compile(_IMAGE), "audio": _compile(_AUDIO),
}
_DEFAULTS: dict[Kind | None, str] = {None: TEXT_DEFAULT, "image": IMAGE_DEFAULT, "audio": AUDIO_DEFAULT}


def name_match(model: str, kind: Kind | None = None) -> str | None:
    """The task the first matching keyword of `kind`'s table names (None: text input), if any."""
    lowered = model.lower()
    for pattern, task in _TABLES[kind]:
        if pattern.search(lowered):
            return task
    return None


def default_task(kind: Kind | None) -> str:
    """What a model whose name matches nothing does with this kind of input."""
    return _DEFAULTS[kind]
