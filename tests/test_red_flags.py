"""The red-flag net (spaCy pipeline built from data/safety + matcher + rules), rule by rule.

For every row R1..R15: a positive, a negated, a misspelt, a downplayed, a buried and a mixed message.
Normal after-effects must not escalate. The pipeline is built in memory from the current data files.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import spacy
import yaml

from mesocare.levels import level_rank
from mesocare.levels import most_urgent_level as most_urgent
from mesocare.safety.build_pipeline import build_nlp, deletion_variants
from mesocare.safety.matcher import Assessment, assess_text
from mesocare.safety.rules import (
    LEXICON_PATH,
    RED_FLAGS_PATH,
    SafetyDataError,
    load_lexicon,
    load_rules,
    load_thresholds,
    parse_rules,
)

FILLER = (
    "Hello, I had my second mesolifting session at the clinic and the nurse was lovely. "
    "I followed the aftercare sheet, stayed out of the sun and skipped the gym. "
)


@pytest.fixture(scope="module")
def nlp() -> spacy.language.Language:
    return build_nlp()


@pytest.fixture(scope="module")
def assess(nlp: spacy.language.Language):
    def run(text: str) -> Assessment:
        return assess_text(nlp, text)

    return run


# (row, expected level, positive, negated, misspelt, downplayed, mixed)
CASES = [
    ("R1", "E0", "my vision is blurry since the injections", "no blurred vision and no eye pain",
     "my vison is blury", "probably nothing but my eyesight went a bit dark",
     "no fever but I can't see properly out of my left eye"),
    ("R2", "E0", "my speech is slurred and my arm feels weak", "no slurred speech",
     "my speach is slured", "it's probably nothing but I feel dizzy",
     "I'm not confused but my face is drooping on one side"),
    ("R3", "E0", "I can't breathe properly and my throat feels tight", "I'm not having trouble breathing",
     "its hard to breth", "my friend says it's normal but my lips are really swolen",
     "no rash but I am wheezing"),
    ("R4", "E0", "it's hard to swallow since the botox", "no trouble swallowing",
     "swolowing is difficult", "I'm sure it's fine but swallowing feels hard",
     "no fever, but I'm struggling to swallow"),
    ("R5", "E1", "there is a white patch on my cheek", "no white patches and no mottling",
     "the area is motled", "probably nothing but the skin near my nose looks grey",
     "no fever but my forehead is blotchy and cold to the touch"),
    ("R6", "E1", "I have pimples where I was injected", "no blisters or pimples",
     "little pustles on my chin", "it's probably just acne but there are whiteheads on my nose",
     "no fever but I have blisters on my cheek"),
    ("R7", "E1", "my scalp is burning since the temple injections", "no scalp pain",
     "my scalp is burnig", "don't want to make a fuss but my scalp hurts at the hairline",
     "no redness but my scalp is really tender"),
    ("R8", "E1", "the skin on my cheek is turning purple", "no purple patches",
     "my skin looks blueish", "sorry to bother you, the scab is turning black",
     "no pain but there is a dark patch spreading on my chin"),
    ("R9", "E2", "there's pus coming out of one injection point", "no fever or chills",
     "I have a fevar", "I'm sure it's fine but there is puss", "no pain but I have chills"),
    ("R10", "E2", "I have a cold sore on my lip", "no cold sores",
     "coldsore on my lip", "probably nothing but I have a cold sore",
     "no fever but my lips are tingling"),
    ("R11", "E2", "I have hives on my face", "no hives or rash",
     "itchy rash on my cheeks", "probably nothing but there's a rash on my face",
     "no trouble breathing but I have hives on my face"),
    ("R12", "E2", "the lump is red and painful", "no lumps", "the lump is red and painfull",
     "probably nothing but the lump is hot to the touch", "no fever but the lump is getting bigger"),
    ("R13", "E3", "my eyelid is droopy", "no droopy eyelid", "my eyelid is droopey",
     "probably nothing but my smile is uneven", "no pain but one eyebrow has dropped"),
    ("R14", "E2", "I have a headache", "no headache", "I have a hedache",
     "probably nothing but my head hurts", "no fever but I have a headache"),
    ("R15", "E1", "the bruise is getting bigger and darker", "no bruising",
     "the brusing is spreading", "it's probably normal but the bruise is getting worse",
     "no pain but my bruise is getting darker"),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("row,level,positive,negated,misspelt,downplayed,mixed", CASES, ids=IDS)
def test_positive(assess, row, level, positive, negated, misspelt, downplayed, mixed) -> None:
    a = assess(positive)
    assert a.level == level, a.as_dict()
    assert row in a.rows


@pytest.mark.parametrize("row,level,positive,negated,misspelt,downplayed,mixed", CASES, ids=IDS)
def test_negated(assess, row, level, positive, negated, misspelt, downplayed, mixed) -> None:
    a = assess(negated)
    assert a.level is None, a.as_dict()
    assert a.as_dict()["negated"]


@pytest.mark.parametrize("row,level,positive,negated,misspelt,downplayed,mixed", CASES, ids=IDS)
def test_misspelt(assess, row, level, positive, negated, misspelt, downplayed, mixed) -> None:
    a = assess(misspelt)
    assert a.level == level, a.as_dict()


@pytest.mark.parametrize("row,level,positive,negated,misspelt,downplayed,mixed", CASES, ids=IDS)
def test_downplaying_never_lowers(assess, row, level, positive, negated, misspelt, downplayed,
                                  mixed) -> None:
    a = assess(downplayed)
    assert a.findings.downplayed
    assert a.level == level, a.as_dict()


@pytest.mark.parametrize("row,level,positive,negated,misspelt,downplayed,mixed", CASES, ids=IDS)
def test_buried_in_long_message(assess, row, level, positive, negated, misspelt, downplayed,
                                mixed) -> None:
    a = assess(FILLER + positive[0].upper() + positive[1:] + ". " + FILLER + "Thanks!")
    assert a.level == level, a.as_dict()


@pytest.mark.parametrize("row,level,positive,negated,misspelt,downplayed,mixed", CASES, ids=IDS)
def test_mixed_negated_then_positive(assess, row, level, positive, negated, misspelt, downplayed,
                                     mixed) -> None:
    a = assess(mixed)
    assert a.level == level, a.as_dict()
    assert a.as_dict()["negated"], "the denied item must be listed as negated"


@pytest.mark.parametrize("text", [
    "a little redness and swelling, getting better",
    "small bruise on my cheek, it is fading",
    "my skin is a bit tender today",
    "slight itching 2 hours after the treatment",
    "some flaking on day 4",
    "tiny bumps at the injection points since this morning",
    "the swelling is going down, day 2",
    "mild redness this morning, much better now",
    "one week later there is still a faint greenish bruise but it is getting lighter",
    "day 6, I can feel a couple of tiny soft lumps but can't see them, and they are getting smaller",
    "no swelling, no redness, no bruising, I feel great",
    "Can mesolifting cause blindness?",
    "I'm prone to cold sores, can I still have the treatment?",
    "",
    "🙂👍",
])
def test_normal_after_effects_do_not_escalate(assess, text: str) -> None:
    a = assess(text)
    assert a.level is None, a.as_dict()


@pytest.mark.parametrize("text,level", [
    ("the swelling is worse than yesterday, I had it done 3 days ago", "E2"),
    ("the swelling is worse than yesterday, I had it done this morning", "E3"),
    ("the swelling is getting worse", "E2"),
    ("my pain is getting worse", "E1"),
    ("the pain is not getting better", "E1"),
])
def test_worse_after_day_two_escalates(assess, text: str, level: str) -> None:
    assert assess(text).level == level


@pytest.mark.parametrize("text,level", [
    ("I have a fever and feel really unwell", "E0"),
    ("there is pus near my eye", "E0"),
    ("droopy eyelid and blurred vision", "E0"),
    ("worst headache of my life, it came on suddenly", "E0"),
    ("hives all over my body", "E0"),
    ("a lump appeared 6 weeks after treatment", "E3"),
    ("my bruise is still there after 2 weeks", "E3"),
    ("blisters on my cheek, I think it's a cold sore", "E1"),
    ("cold sore blisters on my lip", "E2"),
    ("hair is thinning at my hairline a month later", "E3"),
    ("everything went dark in my right eye for a minute", "E0"),
    ("my eye is watering a lot and it hurts", "E1"),
    ("CANT BREATHE", "E0"),
    ("I see double when I look to the side", "E0"),
    ("a dark curtain is coming down over my left eye", "E0"),
    ("it's like looking through a foggy window on one side", "E0"),
    ("temp is 39.5 and I keep vomiting", "E0"),
    ("I feel so so ill and I have a fever", "E0"),
    ("a few of the red bumps burst and leaked yellow stuff, 3 weeks after", "E2"),
    ("sore red bumps on my cheeks 3 weeks after the treatment", "E2"),
    ("my eyes are so swollen I can hardly open them", "E2"),
    ("the swelling went down but came back today, day 4", "E2"),
    ("swelling in parts they didn't inject", "E2"),
    ("my head has been aching for 3 days since the treatment", "E2"),
    ("I can't turn my left eye outwards", "E0"),
    ("i cant swallow properly since this morning", "E0"),
    ("cant get a full breath in", "E0"),
    ("when I press the red patch it goes white and takes ages to come back", "E1"),
    ("itchy red spots like nettles on my cheeks, breathing fine", "E2"),
    ("my left upper eyelid sits lower than the right, day 6", "E3"),
    ("i keep dropping things and my left hand feels like its not mine", "E0"),
    ("there's a purple fish net pattern on my chin", "E1"),
    ("yellow gunk is coming out of a needle hole, day 3", "E2"),
    ("since the relaxant I can't whistle and my lips feel lazy", "E3"),
    ("a firm pea under the skin of my cheek, still there after 3 weeks", "E3"),
])
def test_conditions_pick_the_right_level(assess, text: str, level: str) -> None:
    assert assess(text).level == level, assess(text).as_dict()


@pytest.mark.parametrize("text", [
    "I can't see much difference yet, is that normal?",
    "I can't see any bruising now",
    "day 1, my lower lids are a tiny bit puffy, going down",
    "nowhere near as sore as yesterday, day 2",
])
def test_look_alikes_do_not_escalate(assess, text: str) -> None:
    assert assess(text).priority in (None, "routine"), assess(text).as_dict()


def test_no_fever_but_vision_keeps_both(assess) -> None:
    d = assess("no fever but I can't see properly out of my left eye").as_dict()
    assert d["level"] == "E0" and d["priority"] == "emergency"
    assert "fever" in d["negated"] and "vision change" in d["symptoms"]


def test_negation_list_with_or(assess) -> None:
    d = assess("I have no fever, chills or rash").as_dict()
    assert d["level"] is None
    assert set(d["negated"]) >= {"fever", "hives or rash"}


def test_comma_without_list_ends_negation(assess) -> None:
    assert assess("no fever, vision blurry").level == "E0"


def test_resolved_emergency_symptom_still_counts(assess) -> None:
    assert assess("my double vision has gone now").level == "E0"


def test_time_and_trajectory(assess) -> None:
    for text, hours in [("yesterday", 24), ("2 days ago", 48), ("day 3", 72), ("day five", 120),
                        ("this morning", 6), ("last week", 168), ("3 hours ago", 3), ("48h ago", 48)]:
        assert assess(f"swelling {text}").findings.hours == hours, text
    assert assess("it is getting worse").findings.trajectory == "worse"
    assert assess("it is getting better").findings.trajectory == "better"
    assert assess("about the same").findings.trajectory == "same"
    assert assess("not getting better").findings.trajectory == "worse"


def test_html_and_huge_messages_are_scanned_whole(assess) -> None:
    assert assess("<p>my <b>vision</b> is <i>blurry</i></p>").level == "E0"
    huge = FILLER * 400 + " I can't breathe. " + FILLER * 50
    assert len(huge) > 50_000
    assert assess(huge).level == "E0"


def test_misspelling_variants_skip_real_words() -> None:
    assert "brething" in deletion_variants("breathing", 7, set())
    assert "selling" not in deletion_variants("swelling", 7, {"selling"})
    assert deletion_variants("eye", 7, set()) == set()


def test_table_covers_every_row_and_level_order() -> None:
    table = load_rules()
    assert {r.row for r in table.rules} == {f"R{i}" for i in range(1, 16)}
    assert most_urgent(["E3", None, "E1", "E2"]) == "E1"
    assert most_urgent([None]) is None


def test_unknown_concept_is_rejected_at_load_time() -> None:
    data = yaml.safe_load(RED_FLAGS_PATH.read_text())
    data["red_flags"][0]["when"]["any"].append("sparkly_eyes")
    with pytest.raises(SafetyDataError, match="sparkly_eyes"):
        parse_rules(data, load_lexicon())


def test_unknown_condition_and_level_are_rejected() -> None:
    lexicon = load_lexicon()
    bad_cond = {"red_flags": [{"id": "x", "row": "R1", "level": "E0", "when": {"anny": ["fever"]}}]}
    with pytest.raises(SafetyDataError):
        parse_rules(bad_cond, lexicon)
    bad_level = {"red_flags": [{"id": "x", "row": "R1", "level": "E9", "when": {"any": ["fever"]}}]}
    with pytest.raises(SafetyDataError):
        parse_rules(bad_level, lexicon)


def test_yaml_booleans_in_lexicon_are_rejected(tmp_path: Path) -> None:
    text = LEXICON_PATH.read_text().replace('  negation:\n    - "no"\n', "  negation:\n    - no\n")
    assert text != LEXICON_PATH.read_text()
    path = tmp_path / "lexicon.yml"
    path.write_text(text)
    with pytest.raises(SafetyDataError, match=r"cues\.negation\.0: str type expected"):
        load_lexicon.__wrapped__(path)


def test_unknown_inability_concept_is_rejected(tmp_path: Path) -> None:
    text = LEXICON_PATH.read_text().replace("  inability_concepts:\n    - eye_movement\n",
                                            "  inability_concepts:\n    - eye_moves\n")
    assert text != LEXICON_PATH.read_text()
    path = tmp_path / "lexicon.yml"
    path.write_text(text)
    with pytest.raises(SafetyDataError, match="inability_concepts"):
        load_lexicon.__wrapped__(path)


def test_saved_pipeline_loads_with_plain_spacy(nlp, tmp_path: Path) -> None:
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    assert loaded.pipe_names == nlp.pipe_names
    assert assess_text(loaded, "I can't breathe").level == "E0"


# ---------------------------------------------------------------- round 2: generalisation by failure category
# Each category: positive, misspelt, downplayed, mixed with a denial, and (in the buried test) hidden in a
# long message. Sentences written for these tests, not copied from any evaluation set.
GENERALISATION = [
    # 1. indirect vision complaints (R1 E0); the negation applies to "right"/"ok", not to the eyesight
    ("vision", "E0", "R1", "I don't think my eyesight is right since this morning"),
    ("vision", "E0", "R1", "something is off with my sight on the left"),
    ("vision", "E0", "R1", "she says it's like a shade being drawn down over her right eye"),
    ("vision", "E0", "R1", "it feels like a blind came down over one eye"),
    ("vision", "E0", "R1", "things look misty on the right side"),
    ("vision", "E0", "R1", "everything is smudged out of my left eye"),
    ("vision", "E0", "R1", "i cant focus properly since the injections"),
    ("vision", "E0", "R1", "my eye feels weird and I can't see very well"),
    ("vision", "E0", "R1", "my eysight is a bit foggy, probably just tired"),
    ("vision", "E0", "R1", "no pain at all, but my vision is a little smeary"),
    # 2. airway / anaphylaxis (R3 E0), misspelt
    ("airway", "E0", "R3", "my tung feels swollen"),
    ("airway", "E0", "R3", "my throut feels tight"),
    ("airway", "E0", "R3", "breatheing is getting hard"),
    ("airway", "E0", "R3", "there's a whistling sound when I breathe out"),
    ("airway", "E0", "R3", "my breathing sounds whistly"),
    ("airway", "E0", "R3", "her lips and tongue are swelling up"),
    ("airway", "E0", "R3", "I have hives on my cheeks and my voice has gone croaky"),
    ("airway", "E0", "R3", "hives on my face and swallowing feels a bit odd"),
    ("airway", "E0", "R3", "rash on my chin and it feels like something is stuck in my throat"),
    ("airway", "E0", "R3", "sorry to bother you, I'm a bit wheezey tonight"),
    # 3. toxin spread speech (R4: E1 alone, E0 with breathing/swallowing trouble)
    ("speech", "E1", "R4", "my speech is a bit slurry since the botox, breathing is fine"),
    ("speech", "E1", "R4", "since the muscle relaxant my voice sounds nasal"),
    ("speech", "E1", "R4", "after the anti-wrinkle jabs my words come out wrong"),
    ("speech", "E1", "R4", "I'm talking funny since the third stage, no trouble swallowing"),
    ("speech", "E1", "R4", "my speech sounds garbled, I had botox 4 days ago"),
    ("speech", "E0", "R4", "slurred speech since the botox and it's hard to swallow"),
    ("speech", "E0", "R2", "my husband says my speech is slurred"),
    # 4. pustules near an injection site (R6 E1), "not acne" never lowers it
    ("pustules", "E1", "R6", "there are yellow-headed spots near where I was injected"),
    ("pustules", "E1", "R6", "a few whiteheads came up around the injection points"),
    ("pustules", "E1", "R6", "little pus spots bunched together on my temple"),
    ("pustules", "E1", "R6", "tiny blisters in a cluster beside my nose"),
    ("pustules", "E1", "R6", "it's not acne, they are yellow headed spots on my cheek"),
    ("pustules", "E1", "R6", "a patch of tiny spots by the injection site, I never get acne"),
    # 5. fever (R9): a reading >= the threshold is an infection sign; with rigors or very unwell it is E0
    ("fever", "E0", "R9", "my temperature is 38.6 and I can't stop shivering"),
    ("fever", "E0", "R9", "39 degrees and I feel really awful"),
    ("fever", "E0", "R9", "high temp and I can barely get out of bed"),
    ("fever", "E0", "R9", "I have a high fever with rigours"),
    ("fever", "E0", "R9", "temp of 101.8F, shaking all over"),
    ("fever", "E2", "R9", "my temp was 38.1 this evening"),
    ("fever", "E2", "R9", "thermometer says 100.9 f"),
    ("fever", "E2", "R9", "temperature is 38,4"),
    # 6. hypersensitivity (R11 E2)
    ("allergy", "E2", "R11", "both eyes are swollen nearly shut this morning"),
    ("allergy", "E2", "R11", "I can barely open my eyes, they're so puffy"),
    ("allergy", "E2", "R11", "the puffiness has spread to my ears and neck"),
    ("allergy", "E2", "R11", "my jaw is puffy too and that area was never injected"),
    # 7. headache (R14)
    ("headache", "E2", "R14", "I keep getting headaches since the botox"),
    ("headache", "E2", "R14", "a headake that won't go away, day 3"),
    ("headache", "E0", "R14", "a splitting headache came on all of a sudden"),
    ("headache", "E0", "R14", "worst headache of my life, it's probably nothing"),
    # 8. delayed nodules (R12: E3, E2 when inflamed)
    ("nodule", "E3", "R12", "there's a firm lump under the skin 3 months after my mesolifting"),
    ("nodule", "E3", "R12", "I can feel little hard balls under my skin, it's been months"),
    ("nodule", "E3", "R12", "a few hard bumps showed up after my covid booster"),
    ("nodule", "E3", "R12", "lumps appeared after dental work last week, treated in spring"),
    ("nodule", "E3", "R12", "a nodual in my cheek 6 weeks after"),
    ("nodule", "E2", "R12", "a hard lump 2 months after treatment, it's red and sore"),
    ("nodule", "E2", "R12", "the little balls under my skin are leaking now"),
    # 9. toxin local effects (R13 E3), gradual; with speech or swallowing trouble R4 wins
    ("toxin-local", "E3", "R13", "my eyelid feels heavier a few days after the relaxant"),
    ("toxin-local", "E3", "R13", "one brow has dropped since the botox"),
    ("toxin-local", "E3", "R13", "my smile has gone lopsided since the botox"),
    ("toxin-local", "E3", "R13", "one corner of my mouth doesn't lift when I smile, had botox last week"),
    ("toxin-local", "E3", "R13",
     "my mouth droops on one side, came on gradually over a few days after the botox"),
    ("toxin-local", "E1", "R4", "my lid is droopy and my words come out slurry since the botox"),
    ("toxin-local", "E0", "R2", "my mouth suddenly drooped on one side after the botox"),
    ("toxin-local", "E0", "R2", "my mouth is drooping on one side"),
]


@pytest.mark.parametrize("category,level,row,text", GENERALISATION,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(GENERALISATION)])
def test_generalisation_categories(assess, category, level, row, text) -> None:
    a = assess(text)
    assert a.level == level, a.as_dict()
    assert row in a.rows, a.as_dict()


@pytest.mark.parametrize("category,level,row,text", GENERALISATION[::3],
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(GENERALISATION[::3])])
def test_generalisation_buried_in_long_message(assess, category, level, row, text) -> None:
    closing = "Sorry for the long message, it's probably nothing!"
    a = assess(FILLER + "Anyway. " + text + ". " + FILLER + closing)
    assert a.level == level, a.as_dict()


@pytest.mark.parametrize("text", [
    # denials and reassurances
    "no problems with my eyesight",
    "my eyesight is fine, just a little swelling under one eye that is going down",
    "vision is normal and I can see fine",
    "no hives, no wheezing and my tongue isn't swollen",
    "my voice is fine and my speech is normal",
    "my temperature is 36.9, no fever",
    "temp 37.2 this morning, swelling going down",
    "I'm 38 and had my second session on Monday, all good",
    "no pimples, no whiteheads, skin looks calm",
    "tiny bumps at the injection points this morning, getting smaller",
    # talk about a risk, not a symptom
    "I read about blindness online and got scared",
    "is there a risk of blindness with the fillers",
    "what if I get an infection after the treatment",
    "I saw a video about vascular occlusion and now I'm nervous",
    "my friend had a droopy eyelid after botox, how likely is that?",
    "I heard that some people get lumps months later",
])
def test_denials_and_talk_about_risks_do_not_escalate(assess, text: str) -> None:
    a = assess(text)
    assert a.level is None, a.as_dict()


@pytest.mark.parametrize("text,level", [
    ("I read about blindness online and now my vision is blurry", "E0"),
    ("I read about it because my vision has gone blurry", "E0"),
    ("I'm worried about my eye, everything looks misty", "E0"),
    ("what if it's an infection? there's pus and it's hot", "E2"),
    ("my friend says it's normal but my temperature is 38.3", "E2"),
    ("my temperature is 37 but I have shivers and feel terrible", "E0"),
])
def test_real_complaints_next_to_risk_talk_still_fire(assess, text: str, level: str) -> None:
    a = assess(text)
    assert level_rank(a.level) >= level_rank(level), a.as_dict()


def test_not_acne_is_negated_but_never_lowers(assess) -> None:
    d = assess("it's not acne, there are yellow-headed spots at the injection site").as_dict()
    assert d["level"] == "E1"
    assert "pustules or blisters" in d["symptoms"]


def test_temperature_thresholds_come_from_the_thresholds_file(assess) -> None:
    fever = load_thresholds()["fever"]
    c = float(fever["celsius_min"])
    f = float(fever["fahrenheit_min"])
    assert assess(f"my temperature is {c:.1f}").level == "E2"
    assert assess(f"my temperature is {c - 0.3:.1f}").level is None
    assert assess(f"temperature {f:.1f} F").level == "E2"
    assert assess(f"temperature {f - 0.6:.1f} F").level is None
    assert "high fever" in assess(f"{c + 1:.1f}C and shivering").as_dict()["symptoms"]
