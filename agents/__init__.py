"""Agents: Rememberer, ReAct and static exemplars (installed as ``rlem_gym.agents``)."""
