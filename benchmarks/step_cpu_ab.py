"""1-thread process-CPU-time of one first-order search step (arch step on alphas + weight step on weights).

usage: step_cpu_ab.py CODE_ROOT STEPS [grad|inputs]; CPU time of one thread is far less disturbed by other
load on a shared machine than wall time. `grad` = the arch step as before (autograd.grad), `inputs` = now.
"""
import sys, time, importlib, torch, torch.nn.functional as F
root=sys.argv[1]; sys.path.insert(0,root)
from ssnas.nas.space import SpaceConfig
from ssnas.search_spaces.darts import DartsSupernet
torch.set_num_threads(1); torch.manual_seed(0)
net=DartsSupernet(SpaceConfig(layers=5,init_channels=8),3).to(memory_format=torch.channels_last)
head=torch.nn.Linear(net.feature_dim,10)
x=torch.randn(32,3,32,32).contiguous(memory_format=torch.channels_last); y=torch.randint(0,10,(32,))
al=net.arch_parameters(); ws=net.weight_parameters()+list(head.parameters())
def step():
    loss=F.cross_entropy(head(net(x)),y); torch.autograd.grad(loss,al) if sys.argv[3:4]==['grad'] else loss.backward(inputs=al)
    loss=F.cross_entropy(head(net(x)),y); loss.backward(inputs=ws)
step()
ts=[]
for _ in range(int(sys.argv[2])):
    t0=time.process_time(); step(); ts.append(time.process_time()-t0)
import resource
print(root, 'cpu s/step', [round(t,2) for t in ts], 'min', round(min(ts),2), 'maxrss MB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss//1024)
