"""ADE20K class ids by name, resolved through a checkpoint's `id2label`, and a task-prompt noun parser.

Ids are never hard-coded: the upstream SegVLA notes' `bowl=58, plate=47` is wrong (in the 150-class map 58 is
screen door, 47 sink, 142 plate, and there is no bowl). Names are looked up in the `id2label` that ships with the
Mask2Former checkpoint, so a checkpoint with another label set resolves its own ids or fails loudly.

`ADE20K_150` is the 150-class scene-parsing label list in the order the Hugging Face ADE checkpoints use; it is
used to write ADE-like configs for random-weight models (tests, benchmarks), never to resolve ids.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping

ADE20K_150: tuple[str, ...] = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
    "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion",
    "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace",
    "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway",
    "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
    "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine",
    "hovel", "bus", "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman",
    "bottle", "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer",
    "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle",
    "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle",
    "lake", "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
    "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
)  # fmt: skip

# Everyday words in robot task prompts -> the ADE20K class a Mask2Former ADE model paints them with.
# ADE-150 has no bowl, cup, mug or cube: these go to the nearest class the model knows, chosen by what the
# object looks like on a table top (a cube is a small box; a cup or mug is drinking glassware).
DEFAULT_SYNONYMS: dict[str, str] = {
    "bowl": "plate",
    "dish": "plate",
    "saucer": "plate",
    "cup": "glass",
    "mug": "glass",
    "tumbler": "glass",
    "jar": "bottle",
    "flask": "bottle",
    "cube": "box",
    "block": "box",
    "brick": "box",
    "crate": "box",
    "carton": "box",
    "container": "box",
    "bin": "ashcan",
    "trash": "ashcan",
    "garbage": "ashcan",
    "wastebasket": "ashcan",
    "toy": "plaything",
    "doll": "plaything",
    "fruit": "food",
    "apple": "food",
    "banana": "food",
    "orange": "food",
    "bread": "food",
    "pan": "pot",
    "kettle": "pot",
    "saucepan": "pot",
    "cloth": "towel",
    "rag": "towel",
    "napkin": "towel",
    "sponge": "towel",
    "couch": "sofa",
    "tv": "television receiver",
    "television": "television receiver",
    "laptop": "computer",
    "fridge": "refrigerator",
    "window": "windowpane",
    "carpet": "rug",
    "mat": "rug",
    "drawer": "chest of drawers",
    "cupboard": "cabinet",
    "workbench": "table",
    "tabletop": "table",
    "human": "person",
    "hand": "person",
}

# ADE class names that are also common non-object words in instructions ("step 2", "the base of the arm",
# "in any case", "move to the light side"): the parser skips them unless the synonym table maps to them.
PROMPT_STOPWORDS: frozenset[str] = frozenset(
    {"base", "step", "case", "land", "stage", "bar", "field", "path", "light", "hood", "screen", "pier", "tank"}
)


def normalise_label(name: str) -> str:
    """Lower-case, single-spaced: HF's ADE id2label has entries such as 'bed ' with a trailing space."""
    return " ".join(name.lower().replace("_", " ").split())


def label_index(id2label: Mapping[int | str, str]) -> dict[str, int]:
    """Every name and comma-separated alias in `id2label` -> its class id.

    Some ADE checkpoints spell labels as WordNet synsets ('ashcan, trash can, garbage can, ...'); each alias
    resolves to the same id. The first id wins if two classes share an alias.
    """
    index: dict[str, int] = {}
    for raw_id, label in sorted(id2label.items(), key=lambda kv: int(kv[0])):
        for alias in str(label).split(","):
            alias = normalise_label(alias)
            if alias:
                index.setdefault(alias, int(raw_id))
    return index


def class_id(name: str, id2label: Mapping[int | str, str]) -> int:
    """The id of class `name` in `id2label`; an unknown name raises KeyError listing the closest names."""
    index = label_index(id2label)
    key = normalise_label(name)
    if key in index:
        return index[key]
    close = difflib.get_close_matches(key, list(index), n=5, cutoff=0.5)
    hint = f"closest names: {close}" if close else "no name is close; see the checkpoint's config.json id2label"
    raise KeyError(f"class {name!r} is not in the checkpoint's id2label ({len(id2label)} classes); {hint}")


def class_ids(names: Iterable[str], id2label: Mapping[int | str, str]) -> list[int]:
    """`class_id` for each name, in order."""
    return [class_id(name, id2label) for name in names]


def _singular(word: str) -> str:
    # Plural nouns in prompts ("the cubes", "two boxes", "dishes") -> the singular the label tables use.
    if word.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


class PromptClassParser:
    """Maps the nouns in a task prompt to class ids of one checkpoint, per sample.

    Multi-word labels are matched first ('coffee table' before 'table'), then single words, then the synonym
    table. Every synonym target is checked against `id2label` at construction, so a table that names a class
    the checkpoint lacks fails before any prompt is parsed.
    """

    def __init__(
        self,
        id2label: Mapping[int | str, str],
        synonyms: Mapping[str, str] | None = None,
        stopwords: Iterable[str] = PROMPT_STOPWORDS,
    ):
        self.index = label_index(id2label)
        synonyms = DEFAULT_SYNONYMS if synonyms is None else synonyms  # {}: no synonyms at all
        self.synonyms = {normalise_label(k): class_id(v, id2label) for k, v in synonyms.items()}
        self.stopwords = {normalise_label(w) for w in stopwords}
        self.max_words = max(len(name.split()) for name in [*self.index, *self.synonyms])

    def __call__(self, prompt: str) -> list[int]:
        """Class ids named in `prompt`, first mention first, each once."""
        words = [_singular(w) for w in re.findall(r"[a-z]+", prompt.lower())]
        found: list[int] = []
        i = 0
        while i < len(words):
            for n in range(min(self.max_words, len(words) - i), 0, -1):
                phrase = " ".join(words[i : i + n])
                if phrase in self.synonyms:
                    hit = self.synonyms[phrase]
                elif phrase in self.index and phrase not in self.stopwords:
                    hit = self.index[phrase]
                else:
                    continue
                if hit not in found:
                    found.append(hit)
                i += n
                break
            else:
                i += 1
        return found

    def batch(self, prompts: Iterable[str]) -> list[list[int]]:
        return [self(p) for p in prompts]
