import json, os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
from eval_stats import wilson as wil  # benchmarks/eval_stats.py
L={n:[json.loads(l) for l in open(f'/tmp/res/q05_{n}.jsonl')] for n in ['greedy','entropix','branch','sc8']}
k=len(L['sc8'])
print('problems compared (first k):',k)
def row(name,S,key=lambda x:x['score']['flexible'],tok=lambda x:x['tokens']+x.get('branching',{}).get('dropped_tokens',0)):
    c=sum(key(x) for x in S); t=sum(tok(x) for x in S); lo,hi=wil(c,len(S))
    print(f'| {name} | {c}/{len(S)} | {c/len(S):.3f} ({lo:.3f}-{hi:.3f}) | {t} | {t/len(S):.0f} |')
print('| run | correct (flexible) | accuracy (95% Wilson) | tokens generated | per problem |')
print('|---|---:|---:|---:|---:|')
row('greedy',L['greedy'][:k]); row('entropix (v1 defaults)',L['entropix'][:k]); row('greedy + entropy branching (3 x 8, H > 2)',L['branch'][:k])
S=L['sc8']
for m in ['majority','confidence','deepconf']:
    row(f'8 samples (T 0.7), {m} vote',S,key=lambda x,m=m:x['votes'][m]['correct'])
row('8 samples: pass@1 (mean over samples)',S,key=lambda x:x['pass']['pass@1'])
row('8 samples: pass@8 (any correct)',S,key=lambda x:x['pass']['pass@n'])
print(); print('Branching on these problems: forks', sum(x['branching']['forks'] for x in L['branch'][:k]), 'dropped', sum(x['branching']['dropped_tokens'] for x in L['branch'][:k]))

