"""RedFlagPolicy: answers a red flag on the very turn it is written, whatever else is going on.

For the latest user message with safety.level E0/E1/E2 it predicts utter_red_flag_e0|e1|e2 (a domain
response, so no action server is needed), then action_red_flag_escalation, then abstains. While a staff
member has joined the chat (slot handoff_active) and there is no red flag, it keeps the bot silent.
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

from mesocare.levels import HANDOFF_SLOT, RED_FLAG_LEVELS

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


def actions_since_last_user(events: Iterable[Event]) -> list[str] | None:
    """Names of the actions run after the latest user message (None if there is no user message)."""
    names: list[str] = []
    for event in reversed(list(events)):
        if isinstance(event, UserUttered):
            return list(reversed(names))
        if isinstance(event, ActionExecuted) and event.action_name:
            names.append(event.action_name)
    return None


def decide(level: str | None, actions_since: list[str] | None, handoff_active: bool) -> str | None:
    """The action to force next, or None to abstain. Red flags win over the staff handoff."""
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
    """Deterministic safety policy (priority 7 in config.yml); training stores nothing."""

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

    def train(
        self, training_trackers: list[TrackerWithCachedStates], domain: Domain, **kwargs: Any
    ) -> Resource:
        self.persist()
        return self._resource

    def persist(self) -> None:
        with self._model_storage.write_to(self._resource) as path:
            (path / "red_flag_policy.json").write_text(json.dumps({"version": 1}))

    @classmethod
    def load(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> RedFlagPolicy:
        return cls(config, model_storage, resource, execution_context)

    def predict_action_probabilities(
        self,
        tracker: DialogueStateTracker,
        domain: Domain,
        rule_only_data: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> PolicyPrediction:
        level = red_flag_level(tracker.latest_message.parse_data if tracker.latest_message else None)
        handoff = bool(tracker.get_slot(HANDOFF_SLOT)) if HANDOFF_SLOT in tracker.slots else False
        action = decide(level, actions_since_last_user(tracker.events), handoff)
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
