"""SafetyNet on real Rasa Messages through the real spaCy pipeline; RedFlagPolicy on real trackers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rasa.core.policies.ensemble import DefaultPolicyPredictionEnsemble
from rasa.core.policies.policy import PolicyPrediction, confidence_scores_for
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.nlu.tokenizers.spacy_tokenizer import SpacyTokenizer
from rasa.nlu.utils.spacy_utils import SpacyNLP
from rasa.shared.core.constants import ACTION_LISTEN_NAME
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, ActiveLoop, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.nlu.training_data.message import Message

from mesocare.levels import ASKED_LEVEL_SLOT, HAPPENING_NOW_INTENT
from mesocare.safety.build_pipeline import build_nlp
from mesocare.safety.policy import (
    ESCALATION_ACTION,
    RedFlagPolicy,
    actions_since_last_user,
    decide,
    red_flag_level,
    turn_transitions,
)
from mesocare.safety.rasa_component import SafetyNet
from mesocare.settings import ROOT

# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def spacy_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spacy") / "mesocare_en"
    build_nlp().to_disk(path)
    return path


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> LocalModelStorage:
    return LocalModelStorage(tmp_path_factory.mktemp("storage"))


@pytest.fixture(scope="module")
def context() -> ExecutionContext:
    return ExecutionContext(GraphSchema({}), "test-model")


@pytest.fixture(scope="module")
def nlu(spacy_path: Path, storage: LocalModelStorage, context: ExecutionContext):
    """SpacyNLP -> SpacyTokenizer -> SafetyNet, as in config.yml."""
    spacy_nlp = SpacyNLP.create({**SpacyNLP.get_default_config(), "model": str(spacy_path)},
                                storage, Resource("spacy_nlp"), context)
    tokenizer = SpacyTokenizer.create(SpacyTokenizer.get_default_config(), storage,
                                      Resource("tokenizer"), context)
    net = SafetyNet.create({"model": str(spacy_path)}, storage, Resource("safety"), context)

    def run(text: str) -> Message:
        messages = [Message.build(text=text)]
        messages = spacy_nlp.process(messages, spacy_nlp.provide())
        messages = tokenizer.process(messages)
        return net.process(messages)[0]

    return run


@pytest.fixture(scope="module")
def domain() -> Domain:
    return Domain.load(str(ROOT / "domain.yml"))


@pytest.fixture(scope="module")
def policy(storage: LocalModelStorage, context: ExecutionContext) -> RedFlagPolicy:
    return RedFlagPolicy.create({**RedFlagPolicy.get_default_config()}, storage,
                                Resource("red_flag_policy"), context)


# ---------------------------------------------------------------- SafetyNet


def test_sets_safety_and_entities(nlu) -> None:
    msg = nlu("No fever but my vision is blurry since yesterday and it's getting worse")
    safety = msg.get("safety")
    assert safety["level"] == "E0" and safety["priority"] == "emergency" and "R1" in safety["rules"]
    assert "fever" in safety["negated"]
    assert safety["time_since"] == {"text": "yesterday", "hours": 24.0}
    assert safety["trajectory"] == "worse"
    kinds = {e["entity"] for e in msg.get("entities") if e["extractor"] == "SafetyNet"}
    assert {"symptom", "time_since", "trajectory"} <= kinds
    assert "safety" in msg.as_dict(only_output_properties=True)


def test_overlapping_matches_give_one_entity(nlu) -> None:
    entities = [e for e in nlu("my vison is blury").get("entities") if e["entity"] == "symptom"]
    assert [e["value"] for e in entities] == ["vision_change"]


def test_contract_keys_on_a_harmless_message(nlu) -> None:
    safety = nlu("What is mesolifting?").get("safety")
    assert set(safety) >= {"level", "priority", "rules", "symptoms", "negated", "body_areas", "allergens",
                           "time_since", "trajectory", "downplayed"}
    assert safety["level"] is None and safety["priority"] is None


def test_body_area_and_allergen_entities(nlu) -> None:
    msg = nlu("I am allergic to lidocaine and my cheek is red")
    safety = msg.get("safety")
    assert "lidocaine" in safety["allergens"] and "cheek" in safety["body_areas"]
    entities = {(e["entity"], e["value"]) for e in msg.get("entities")}
    assert ("allergen", "lidocaine") in entities and ("body_area", "cheek") in entities


def test_downplayed_is_reported_but_level_kept(nlu) -> None:
    safety = nlu("my friend says it's normal but there are white patches on my cheek").get("safety")
    assert safety["downplayed"] is True and safety["level"] == "E1"


@pytest.mark.parametrize("text", ["", "   ", "🙂🙂🙂", "<script>alert(1)</script>", "?!?!"])
def test_odd_input_never_breaks(nlu, text: str) -> None:
    safety = nlu(text).get("safety")
    assert safety is not None and safety["level"] is None


def test_html_is_read_as_text(nlu) -> None:
    assert nlu("<p>I <b>can't</b> breathe</p>").get("safety")["level"] == "E0"


def test_huge_message_is_scanned_to_the_end(nlu) -> None:
    text = "I followed all the aftercare advice and stayed out of the sun. " * 1500
    text += "Now my lips are swelling and I can't breathe."
    msg = nlu(text)
    assert msg.get("safety")["level"] == "E0"
    assert all(e["end"] <= 5000 for e in msg.get("entities"))


def test_works_without_spacy_doc(spacy_path: Path, storage, context) -> None:
    net = SafetyNet.create({"model": str(spacy_path)}, storage, Resource("safety2"), context)
    msg = net.process([Message.build(text="I have a fever")])[0]
    assert msg.get("safety")["level"] == "E2"


def test_net_failure_fails_closed(tmp_path: Path, storage, context) -> None:
    """Failure injected for real: no spaCy doc on the message and a pipeline folder that does not exist."""
    net = SafetyNet.create({"model": str(tmp_path / "missing")}, storage, Resource("broken"), context)
    safety = net.process([Message.build(text="what is mesolifting?")])[0].get("safety")
    assert safety["level"] == "E1" and safety["priority"] == "emergency"
    assert safety["error"] is True and safety["reason"] == "safety_net_error"
    assert red_flag_level({"safety": safety}) == "E1"  # the policy answers it like any E1


def test_net_timeout_fails_closed(spacy_path: Path, storage, context) -> None:
    net = SafetyNet.create({"model": str(spacy_path), "timeout_s": 1e-6}, storage, Resource("slow"), context)
    safety = net.process([Message.build(text="my cheek is a bit red " * 400)])[0].get("safety")
    assert safety["level"] == "E1" and safety["reason"] == "safety_net_error"


# ---------------------------------------------------------------- RedFlagPolicy: pure functions


def test_decide_precedence() -> None:
    assert decide("E0", [], False) == "utter_red_flag_e0"
    assert decide("E2", [], True) == "utter_red_flag_e2"  # a red flag beats the staff handoff
    assert decide("E1", ["utter_red_flag_e1"], False) == ESCALATION_ACTION
    assert decide("E1", ["utter_red_flag_e1", ESCALATION_ACTION], False) is None
    assert decide("E3", [], False) is None  # routine: left to the dialogue
    assert decide(None, [], True) == ACTION_LISTEN_NAME
    assert decide(None, ["action_staff_relay"], True) is None
    assert decide(None, [], False) is None
    assert decide("E0", None, False) is None  # no user message yet


def test_red_flag_level_reads_payload() -> None:
    assert red_flag_level({"safety": {"level": "E1"}}) == "E1"
    assert red_flag_level({"safety": {"level": "E3"}}) is None
    assert red_flag_level({"safety": None}) is None
    assert red_flag_level(None) is None


def test_actions_since_last_user() -> None:
    events = [ActionExecuted(ACTION_LISTEN_NAME), UserUttered("hi"), ActionExecuted("utter_greet")]
    assert actions_since_last_user(events) == ["utter_greet"]
    assert actions_since_last_user([ActionExecuted(ACTION_LISTEN_NAME)]) is None


# ---------------------------------------------------------------- RedFlagPolicy on real trackers


def _user(text: str, level: str | None, intent: str = "report_symptoms", asked: str | None = None,
          asked_rules: list[str] | None = None) -> UserUttered:
    parse = {"intent": {"name": intent, "confidence": 0.9},
             "safety": {"level": level, "priority": None, "rules": [], "asked_level": asked,
                        "asked_rules": asked_rules or []}}
    return UserUttered(text, intent={"name": intent, "confidence": 0.9}, parse_data=parse)


def _tracker(domain: Domain, *events: Any) -> DialogueStateTracker:
    return DialogueStateTracker.from_events("test", [ActionExecuted(ACTION_LISTEN_NAME), *events],
                                            domain.slots)


def _predicted(policy: RedFlagPolicy, tracker: DialogueStateTracker, domain: Domain) -> str | None:
    pred = policy.predict_action_probabilities(tracker, domain)
    if max(pred.probabilities) == 0:
        return None
    assert pred.is_no_user_prediction and pred.max_confidence == 1.0
    return domain.action_names_or_texts[pred.max_confidence_index]


@pytest.mark.parametrize("level", ["E0", "E1", "E2"])
def test_red_flag_sequence(policy, domain, level: str) -> None:
    utter = f"utter_red_flag_{level.lower()}"
    t = _tracker(domain, _user("help", level))
    assert _predicted(policy, t, domain) == utter
    t.update(ActionExecuted(utter))
    assert _predicted(policy, t, domain) == ESCALATION_ACTION
    t.update(ActionExecuted(ESCALATION_ACTION))
    assert _predicted(policy, t, domain) is None


def test_red_flag_inside_active_form(policy, domain) -> None:
    t = _tracker(domain, _user("I had it done", None), ActiveLoop("triage_form"),
                 ActionExecuted("triage_form"), ActionExecuted(ACTION_LISTEN_NAME),
                 _user("yesterday, and now I can't breathe", "E0", intent="inform"))
    assert t.active_loop_name == "triage_form"
    assert _predicted(policy, t, domain) == "utter_red_flag_e0"


def test_red_flag_after_nlu_fallback(policy, domain) -> None:
    t = _tracker(domain, _user("blurry eye thing", "E0", intent="nlu_fallback"))
    assert _predicted(policy, t, domain) == "utter_red_flag_e0"


def test_failed_escalation_action_does_not_loop(policy, domain) -> None:
    """When the action server is down Rasa still logs ActionExecuted: the policy must stop."""
    t = _tracker(domain, _user("help", "E1"), ActionExecuted("utter_red_flag_e1"),
                 ActionExecuted(ESCALATION_ACTION))
    assert _predicted(policy, t, domain) is None


def test_handoff_keeps_bot_silent_unless_red_flag(policy, domain) -> None:
    t = _tracker(domain, SlotSet("handoff_active", True), _user("what does it cost?", None,
                                                                intent="ask_price"))
    assert _predicted(policy, t, domain) == ACTION_LISTEN_NAME
    t.update(ActionExecuted(ACTION_LISTEN_NAME))
    t2 = _tracker(domain, SlotSet("handoff_active", True), _user("I can't see", "E0"))
    assert _predicted(policy, t2, domain) == "utter_red_flag_e0"


def test_abstains_without_red_flag(policy, domain) -> None:
    t = _tracker(domain, _user("what is mesolifting", None, intent="ask_what_is"))
    assert _predicted(policy, t, domain) is None


def test_turn_transitions_from_a_story() -> None:
    events = [ActionExecuted(ACTION_LISTEN_NAME), UserUttered("allergy test?"),
              ActionExecuted("utter_ask_allergy_test"), ActionExecuted("allergy_form"),
              ActionExecuted(ACTION_LISTEN_NAME), UserUttered("risks?"),
              ActionExecuted("utter_ask_side_effects"), ActionExecuted(ACTION_LISTEN_NAME)]
    ends, continues = turn_transitions(events)
    assert ends == {"allergy_form", "utter_ask_side_effects"}
    assert continues == {"utter_ask_allergy_test"}


@pytest.fixture()
def asking_policy(policy: RedFlagPolicy) -> RedFlagPolicy:
    policy.turn_enders = {"utter_ask_side_effects", "utter_ask_pain"}
    return policy


def test_risk_question_gets_answer_then_warning_then_listen(asking_policy, domain) -> None:
    t = _tracker(domain, _user("can it blind you?", None, intent="ask_side_effects", asked="E0",
                               asked_rules=["R1"]))
    assert _predicted(asking_policy, t, domain) is None  # the rules answer the question first
    t.update(ActionExecuted("utter_ask_side_effects"))
    assert _predicted(asking_policy, t, domain) == "utter_warning_vision"
    t.update(ActionExecuted("utter_warning_vision"))
    assert _predicted(asking_policy, t, domain) == ACTION_LISTEN_NAME


def test_warning_waits_for_a_form_that_follows_the_answer(asking_policy, domain) -> None:
    t = _tracker(domain, _user("is the allergy test risky, can I get anaphylaxis?", None,
                               intent="ask_allergy_test", asked="E0", asked_rules=["R3"]),
                 ActionExecuted("utter_ask_allergy_test"))
    assert _predicted(asking_policy, t, domain) is None  # allergy_form follows in the rules


def test_risk_question_read_as_report_gets_the_risk_answer(asking_policy, domain) -> None:
    t = _tracker(domain, _user("does necrosis really happen", None, intent="report_symptoms", asked="E1",
                               asked_rules=["R8"]))
    assert _predicted(asking_policy, t, domain) == "utter_ask_side_effects"
    t.update(ActionExecuted("utter_ask_side_effects"))
    assert _predicted(asking_policy, t, domain) == "utter_warning_blood_supply"


@pytest.mark.parametrize("level", ["E0", "E1", "E2"])
def test_happening_now_escalates_at_the_topic_level(policy, domain, level: str) -> None:
    t = _tracker(domain, SlotSet(ASKED_LEVEL_SLOT, level), _user("/report_happening_now", None,
                                                                 intent=HAPPENING_NOW_INTENT))
    utter = f"utter_red_flag_{level.lower()}"
    assert _predicted(policy, t, domain) == utter
    t.update(ActionExecuted(utter))
    assert _predicted(policy, t, domain) == ESCALATION_ACTION


def test_happening_now_without_a_topic_is_left_to_the_rules(policy, domain) -> None:
    t = _tracker(domain, _user("this is happening to me now", None, intent=HAPPENING_NOW_INTENT))
    assert _predicted(policy, t, domain) is None


def test_component_marks_a_risk_question_as_asked(nlu) -> None:
    msg = nlu("can these injections make you go blind?")
    safety = msg.get("safety")
    assert safety["level"] is None and safety["asked_level"] == "E0" and safety["asked_rules"] == ["R1"]
    assert {"entity": ASKED_LEVEL_SLOT, "value": "E0"}.items() <= next(
        e for e in msg.get("entities") if e["entity"] == ASKED_LEVEL_SLOT).items()
    reported = nlu("could it blind me? my vision has been blurry since this morning").get("safety")
    assert reported["level"] == "E0"
    assert not any(e["entity"] == ASKED_LEVEL_SLOT for e in nlu("my vision is blurry").get("entities"))


def test_beats_rule_policy_form_loop(policy, domain) -> None:
    """RulePolicy's active-loop prediction is a no-user prediction too; priority 7 > 6 wins the tie."""
    t = _tracker(domain, ActiveLoop("triage_form"), _user("my lips are swelling", "E0"))
    ours = policy.predict_action_probabilities(t, domain)
    loop = PolicyPrediction(confidence_scores_for("triage_form", 1.0, domain), "RulePolicy", 6,
                            is_no_user_prediction=True)
    fallback = PolicyPrediction(confidence_scores_for("action_default_fallback", 1.0, domain),
                                "RulePolicy", 6)
    best = DefaultPolicyPredictionEnsemble._pick_best_policy([loop, ours, fallback])
    assert best.policy_name == "RedFlagPolicy"
    assert domain.action_names_or_texts[best.max_confidence_index] == "utter_red_flag_e0"


def test_train_persist_load_roundtrip(policy, domain, storage, context) -> None:
    resource = policy.train([], domain)
    loaded = RedFlagPolicy.load({**RedFlagPolicy.get_default_config()}, storage, resource, context)
    t = _tracker(domain, _user("help", "E2"))
    assert _predicted(loaded, t, domain) == "utter_red_flag_e2"


def test_component_output_drives_policy(nlu, policy, domain) -> None:
    msg = nlu("probably nothing but the skin on my nose looks grey")
    parse = msg.as_dict(only_output_properties=True)
    event = UserUttered(parse["text"], intent={"name": "report_symptoms", "confidence": 0.5},
                        parse_data={**parse, "intent": {"name": "report_symptoms", "confidence": 0.5}})
    t = _tracker(domain, event)
    assert _predicted(policy, t, domain) == "utter_red_flag_e1"


def test_red_flag_responses_exist_and_have_numbers(domain) -> None:
    for level in ("e0", "e1", "e2"):
        texts = [r["text"] for r in domain.responses[f"utter_red_flag_{level}"]]
        assert texts and all("{clinic_phone}" in t and "{emergency_number}" in t for t in texts)
    e0 = domain.responses["utter_red_flag_e0"][0]["text"]
    assert e0.startswith("Please call {emergency_number} now") and "?" not in e0


# ---------------------------------------------------------------- live (shared stack)


@pytest.mark.live
def test_live_red_flag_mid_faq(live_stack) -> None:
    sender = live_stack.new_sender()
    live_stack.send(sender, "What is mesolifting?")
    replies = live_stack.send(sender, "also my vision went blurry after the injections")
    assert replies and replies[0]["text"].startswith("Please call 999 now"), replies
