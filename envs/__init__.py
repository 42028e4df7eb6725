"""Gymnasium text environments: WebShop and WikiHow (installed as ``rlem_gym.envs``)."""
