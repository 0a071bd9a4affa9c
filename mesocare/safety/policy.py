"""RedFlagPolicy: answers a red flag on the very turn it is written, whatever else is going on.

For the latest user message with safety.level E0/E1/E2 it predicts utter_red_flag_e0|e1|e2 (a domain
response, so no action server is needed), then action_red_flag_escalation, then abstains. The same happens
when the patient answers "This is happening to me now" (intent report_happening_now) after a question about
a red-flag topic, at that topic's level. A question about a red-flag topic (safety.asked_level, nothing
reported) gets its normal answer, then one warning line for the topic (data/safety/asked_topics.yml); a risk
question the intent model read as a report gets the side-effects answer instead of the triage questions.
While a staff member has joined the chat (slot handoff_active) and there is no red flag, the bot is silent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from rasa.core.policies.policy import Policy, PolicyPrediction, confidence_scores_for
from rasa.engine.graph import ExecutionContext
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.core.constants import ACTION_LISTEN_NAME
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, Event, UserUttered
from rasa.shared.core.generator import TrackerWithCachedStates
from rasa.shared.core.trackers import DialogueStateTracker

from mesocare.levels import ASKED_LEVEL_SLOT, HANDOFF_SLOT, HAPPENING_NOW_INTENT, RED_FLAG_LEVELS
from mesocare.safety.rules import load_asked_topics

logger = logging.getLogger(__name__)

ESCALATION_ACTION = "action_red_flag_escalation"
SAFETY_KEY = "safety"


RESPONSE_FOR_LEVEL = {"E0": "utter_red_flag_e0", "E1": "utter_red_flag_e1", "E2": "utter_red_flag_e2"}


def utter_for_level(level: str) -> str:
    """The domain response for a red-flag level (E0 -> utter_red_flag_e0)."""
    return RESPONSE_FOR_LEVEL[level]


def red_flag_level(parse_data: dict[str, Any] | None) -> str | None:
    """The level from the SafetyNet payload if it needs the red-flag path (E0-E2), else None."""
    safety = (parse_data or {}).get(SAFETY_KEY) or {}
    level = safety.get("level") if isinstance(safety, dict) else None
    return level if level in RED_FLAG_LEVELS else None


def asked_warning(parse_data: dict[str, Any] | None) -> str | None:
    """The warning line for a red-flag topic asked about (E0-E2, nothing reported), else None."""
    safety = (parse_data or {}).get(SAFETY_KEY) or {}
    if not isinstance(safety, dict) or safety.get("asked_level") not in RED_FLAG_LEVELS:
        return None
    warnings = load_asked_topics()["warnings"]
    return next((warnings[row] for row in safety.get("asked_rules") or [] if row in warnings), None)


def actions_since_last_user(events: Iterable[Event]) -> list[str] | None:
    """Names of the actions run after the latest user message (None if there is no user message)."""
    names: list[str] = []
    for event in reversed(list(events)):
        if isinstance(event, UserUttered):
            return list(reversed(names))
        if isinstance(event, ActionExecuted) and event.action_name:
            names.append(event.action_name)
    return None


def turn_transitions(events: Iterable[Event]) -> tuple[set[str], set[str]]:
    """(actions followed by action_listen, actions followed by another action) in one story or rule."""
    last: str | None = None
    ends: set[str] = set()
    continues: set[str] = set()
    for event in events:
        if isinstance(event, ActionExecuted) and event.action_name:
            if last is not None:
                (ends if event.action_name == ACTION_LISTEN_NAME else continues).add(last)
            last = event.action_name
        elif isinstance(event, UserUttered):
            last = None
    return ends, continues


def decide_asked(warning: str | None, intent: str | None, actions_since: list[str],
                 turn_enders: set[str], in_form: bool) -> str | None:
    """A risk question: its answer, then the topic's warning line at the end of the turn, then listen."""
    if warning is None or in_form:
        return None
    if not actions_since:
        misread = intent == "report_symptoms"
        return load_asked_topics()["answer_for_misread_report"] if misread else None
    if warning in actions_since:
        return ACTION_LISTEN_NAME if actions_since[-1] == warning else None
    return warning if actions_since[-1] in turn_enders else None


def decide(level: str | None, actions_since: list[str] | None, handoff_active: bool) -> str | None:
    """The action to force next for a red flag or the handoff, or None to abstain. Red flags win over
    the staff handoff."""
    if actions_since is None:
        return None
    if level in RED_FLAG_LEVELS:
        utter = utter_for_level(level)
        if not actions_since:
            return utter
        if actions_since[-1] == utter and ESCALATION_ACTION not in actions_since:
            return ESCALATION_ACTION
        return None
    if handoff_active and not actions_since:
        return ACTION_LISTEN_NAME
    return None


@DefaultV1Recipe.register(
    DefaultV1Recipe.ComponentType.POLICY_WITHOUT_END_TO_END_SUPPORT, is_trainable=True
)
class RedFlagPolicy(Policy):
    """Deterministic safety policy (priority 7 in config.yml); training stores only which actions end a
    turn in the stories and rules (after them the warning line of a risk question may follow)."""

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {"priority": 7}

    def __init__(
        self,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        featurizer: Any = None,
    ) -> None:
        super().__init__(config, model_storage, resource, execution_context, featurizer)
        self.turn_enders: set[str] = set()

    def train(
        self, training_trackers: list[TrackerWithCachedStates], domain: Domain, **kwargs: Any
    ) -> Resource:
        enders: set[str] = set()
        continuing: set[str] = set()
        for tracker in training_trackers:
            ends, continues = turn_transitions(tracker.events)
            enders |= ends
            continuing |= continues
        # After these a story or rule always waits for the user: a risk warning may close the turn there.
        self.turn_enders = enders - continuing
        self.persist()
        return self._resource

    def persist(self) -> None:
        with self._model_storage.write_to(self._resource) as path:
            (path / "red_flag_policy.json").write_text(
                json.dumps({"version": 2, "turn_enders": sorted(self.turn_enders)}))

    @classmethod
    def load(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> RedFlagPolicy:
        policy = cls(config, model_storage, resource, execution_context)
        try:
            with model_storage.read_from(resource) as path:
                data = json.loads((path / "red_flag_policy.json").read_text())
            policy.turn_enders = set(data.get("turn_enders") or [])
        except (ValueError, FileNotFoundError, OSError):
            logger.warning("RedFlagPolicy: no stored turn ends; risk warnings follow no answer")
        return policy

    def predict_action_probabilities(
        self,
        tracker: DialogueStateTracker,
        domain: Domain,
        rule_only_data: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> PolicyPrediction:
        parse_data = tracker.latest_message.parse_data if tracker.latest_message else None
        level = red_flag_level(parse_data)
        intent = ((parse_data or {}).get("intent") or {}).get("name")
        if level is None and intent == HAPPENING_NOW_INTENT and ASKED_LEVEL_SLOT in tracker.slots:
            asked = tracker.get_slot(ASKED_LEVEL_SLOT)
            level = asked if asked in RED_FLAG_LEVELS else None
        handoff = bool(tracker.get_slot(HANDOFF_SLOT)) if HANDOFF_SLOT in tracker.slots else False
        since = actions_since_last_user(tracker.events)
        action = decide(level, since, handoff)
        if action is None and level is None and since is not None and not handoff:
            action = decide_asked(asked_warning(parse_data), intent, since, self.turn_enders,
                                  bool(tracker.active_loop_name))
        if action is None or action not in domain.action_names_or_texts:
            if action is not None:
                logger.error("RedFlagPolicy wanted %s but the domain does not define it", action)
            return self._prediction(self._default_predictions(domain))
        logger.info("RedFlagPolicy: level=%s handoff=%s -> %s", level, handoff, action)
        return self._prediction(
            confidence_scores_for(action, 1.0, domain),
            is_no_user_prediction=True,
            diagnostic_data={"red_flag_level": level},
        )
