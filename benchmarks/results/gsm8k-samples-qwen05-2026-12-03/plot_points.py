import json, math
exec(open('/tmp/res/summ.py').read().split("L={")[0])  # wil()
L={n:[json.loads(l) for l in open(f'/tmp/res/q05_{n}.jsonl')] for n in ['greedy','entropix','branch','sc8']}
k=len(L['sc8'])
def emit(fn,label,S,key,samples,vote):
    c=sum(key(x) for x in S); t=sum(x['tokens']+x.get('branching',{}).get('dropped_tokens',0) for x in S)
    lo,hi=wil(c,len(S))
    json.dump({"label":label,"policy":"-","n":len(S),"correct":c,"accuracy":c/len(S),"ci95":[lo,hi],"tokens_generated":t,
               "prefill_tokens":0,"samples":samples,"vote":vote},open(f'/tmp/res/plot/{fn}.json','w'))
import os; os.makedirs('/tmp/res/plot',exist_ok=True)
emit('greedy','greedy',L['greedy'][:k],lambda x:x['score']['flexible'],1,'none')
emit('entropix','entropix',L['entropix'][:k],lambda x:x['score']['flexible'],1,'none')
emit('branch','entropy branching 3x8',L['branch'][:k],lambda x:x['score']['flexible'],1,'none')
for m in ['majority','confidence','deepconf']:
    emit('sc8_'+m,'8 samples, '+m,L['sc8'],lambda x,m=m:x['votes'][m]['correct'],8,m)
print(k)
