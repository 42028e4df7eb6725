"""The results-page step with another model: WikiHow dev tasks 0..N-1 (see ../order_probe.py), the
untrained Rememberer (wikihow:init), the study's settings (constrained decoding, official advice):
its action on the home page, then on the page that follows. One JSON line per task.

    python docs/study/probes/order/probe_15b.py qwen2.5-coder-1.5b:gguf official 5 > qwen15b_official.jsonl
"""
import json, sys, time
sys.path.insert(0, __import__('os').path.join(__import__('os').path.dirname(__file__), '..'))
from order_probe import dev_tasks, CONFIG
from rlem_gym.benchmarks.config import BenchConfig
from rlem_gym.benchmarks.episode import initial_memory, make_bench_agent, make_env
from rlem_gym.llm import make_llm
model=sys.argv[1]; order=sys.argv[2]; n=int(sys.argv[3])
llm=make_llm(model)
cfg = BenchConfig(**json.loads(CONFIG.read_text())["config"])
for ti in range(n):
    tasks=dev_tasks()[ti:ti+1]; env=make_env(cfg,{"task_set":tasks})
    agent=make_bench_agent(cfg,f"rememberer[exemplar_order={order}]",llm,initial_memory(cfg,0)); agent.eval()
    obs,info=env.reset(seed=0,options={"task_index":0}); agent.reset(obs,info)
    t=time.time(); a=agent.act(obs,info); obs,r,term,tr,info=env.step(a); agent.observe(a,r,term,tr,info)
    t1=time.time(); b=agent.act(obs,info); obs,r2,term,tr,info=env.step(b)
    print(json.dumps({"model":model,"order":order,"task":tasks[0],"home":a,"r0":r,"results":b,"r1":r2,"raw1":agent.last_step.raw_output[:100],"s":[round(t1-t,1),round(time.time()-t1,1)]}),flush=True)
