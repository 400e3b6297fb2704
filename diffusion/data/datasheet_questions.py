"""The questions of a dataset's datasheet: Gebru et al.'s seven sections, abridged for an image set.

Gebru, Morgenstern, Vecchione, Wortman Vaughan, Wallach, Daumé III and Crawford, "Datasheets
for Datasets" (2018, arXiv:1803.09010) ask the creators of a dataset some fifty questions in
seven sections. An artist's folder of drawings for a model trained from scratch needs fewer:
the questions kept here are theirs (shortened, and "instances" read as "images"), chosen for
an image set; those about people's personal data and about surveys are folded into one
question each.

Each question has a key (``section.name``, as the answers file ``datasheet-answers.toml``
writes it), a short label (the process report's table), and says whether the author is asked
even when the manifest and the image files already give part of the answer (who assembled the
dataset is not who drew its images).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Question:
    """One question of the datasheet.

    ``name`` is its key inside its section; ``label`` the short name the report shows;
    ``ask_author``: the author's answer is wanted even where facts are known.
    """

    name: str
    label: str
    text: str
    ask_author: bool = True


@dataclass(frozen=True)
class QuestionSection:
    """One of the seven sections: its key in the answers file, its title and its questions."""

    key: str
    title: str
    questions: tuple[Question, ...]


SECTIONS: tuple[QuestionSection, ...] = (
    QuestionSection("motivation", "Motivation", (
        Question("purpose", "Purpose", "For what purpose was the dataset created? Was there a specific task in mind?"),
        Question("creators", "Created by", "Who created the dataset, and on behalf of which person, group or entity?"),
        Question("funding", "Funding", "Who funded the creation of the dataset?"),
    )),
    QuestionSection("composition", "Composition", (
        Question("instances", "What the images show", "What do the images that make up the dataset represent?"),
        Question("count", "Images", "How many images are there in total?", ask_author=False),
        Question("sample", "Whole or sample", "Does the dataset contain all possible images, or is it a sample from a "
                 "larger set? If a sample, how was it chosen and is it representative?"),
        Question("data", "Each image", "What data does each image consist of?", ask_author=False),
        Question("labels", "Labels", "Is there a label associated with each image?", ask_author=False),
        Question("missing", "Missing information", "Is any information missing from individual images?",
                 ask_author=False),
        Question("splits", "Splits", "Are there recommended data splits (training, held-out)?"),
        Question("redundancies", "Errors, redundancies", "Are there any errors, sources of noise, or redundancies "
                 "in the dataset?", ask_author=False),
        Question("self_contained", "Self-contained", "Is the dataset self-contained, or does it link to or "
                 "otherwise rely on external resources?", ask_author=False),
        Question("sensitive", "Confidential, offensive", "Does the dataset contain images that might be considered "
                 "confidential, or that, viewed directly, might be offensive, insulting or threatening?"),
        Question("people", "People", "Does the dataset identify any people (portraits, photographs of identifiable "
                 "persons), directly or indirectly?"),
    )),
    QuestionSection("collection", "Collection process", (
        Question("how", "Acquired how", "How was each image acquired (drawn, photographed, scanned, taken from "
                 "another collection)?"),
        Question("who", "Collected by", "Who was involved in the collection process, and how were they compensated?"),
        Question("timeframe", "Timeframe", "Over what timeframe were the images made and collected?"),
        Question("consent", "Consent", "Were the rights holders (and any people shown) told about this use, and "
                 "did they consent? How?"),
    )),
    QuestionSection("preprocessing", "Preprocessing, cleaning, labelling", (
        Question("done", "Preprocessing", "Was any preprocessing, cleaning or labelling of the data done?"),
        Question("raw", "Raw data kept", "Was the raw data saved in addition to the preprocessed data?",
                 ask_author=False),
        Question("software", "Software", "Is the software used to preprocess the images available?",
                 ask_author=False),
    )),
    QuestionSection("uses", "Uses", (
        Question("used", "Used for", "Has the dataset been used for any tasks already?"),
        Question("other", "Could be used for", "What (other) tasks could the dataset be used for?"),
        Question("impact", "Caveats", "Is there anything about the composition of the dataset or the way it was "
                 "collected and preprocessed that might impact future uses?"),
        Question("not_for", "Not to be used for", "Are there tasks for which the dataset should not be used?"),
    )),
    QuestionSection("distribution", "Distribution", (
        Question("shared", "Shared with others", "Will the dataset be distributed to third parties? How (archive, "
                 "website, repository), and when?"),
        Question("license", "Licences", "Is the dataset distributed under a copyright or other licence, or under "
                 "terms of use?", ask_author=False),
        Question("restrictions", "Restrictions", "Have any third parties imposed restrictions on the images, or do "
                 "any export controls or other regulatory restrictions apply?"),
    )),
    QuestionSection("maintenance", "Maintenance", (
        Question("maintainer", "Maintained by", "Who will be supporting, hosting and maintaining the dataset, and "
                 "how can they be contacted?"),
        Question("updates", "Updates", "Will the dataset be updated (to correct errors, add or delete images)? "
                 "How will users know?"),
        Question("contributions", "Contributions", "If others want to extend, augment or build on the dataset, is "
                 "there a way for them to do so?"),
    )),
)


def question_keys() -> dict[str, tuple[str, ...]]:
    """Section key -> the keys of its questions, in datasheet order (the answers file's schema)."""
    return {section.key: tuple(q.name for q in section.questions) for section in SECTIONS}
